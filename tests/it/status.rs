//! `unlinker status` as an operator uses it: without any secret, before and after a run; a
//! variable that decides a path refused by name; a damaged checkpoint named with its problem;
//! and why the last run stopped, including a run killed with no end record.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use unlinker::checkpoint::{Binding, Checkpoint};

use crate::support::{Run, Sim, TOKEN, UNLINKER, auth0_job, rows_input, unlinker, write};

/// `unlinker status JOB` with an empty environment (no secret, no variable at all).
fn status_without_env(job: &Path) -> Run {
    Command::new(UNLINKER)
        .args(["status", job.to_str().unwrap()])
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .expect("run unlinker status")
        .into()
}

/// An Auth0 job against the simulator whose token comes from `${TEST_TOKEN}`.
fn job(dir: &Path, sim: &Sim) -> std::path::PathBuf {
    auth0_job(dir, &sim.url, "in.csv", "")
}

#[test]
fn status_needs_no_secret_before_and_after_a_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.csv", &rows_input(5));
    let sim = Sim::start(&[
        "--seed",
        input.to_str().unwrap(),
        "--seed-vendor",
        "auth0",
        "--auth0-token",
        TOKEN,
    ]);
    let job = job(dir.path(), &sim);

    let before = status_without_env(&job);
    assert_eq!(before.code, 0, "{}", before.stderr);
    assert!(
        before.stdout.contains("nothing has run yet"),
        "{}",
        before.stdout
    );
    assert!(
        before
            .stdout
            .contains("${TEST_TOKEN} (`vendors.auth0.token`)"),
        "the unset secret is listed as needed by run: {}",
        before.stdout
    );
    assert!(!before.stdout.contains(TOKEN));

    let run = unlinker(
        &["run", job.to_str().unwrap(), "--no-progress"],
        &[("TEST_TOKEN", TOKEN)],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);

    let after = status_without_env(&job);
    assert_eq!(after.code, 0, "{}", after.stderr);
    for part in ["unlinked   5", "pending    0", "state      complete"] {
        assert!(after.stdout.contains(part), "{part}: {}", after.stdout);
    }
    // A `${file:...}` secret nobody can read here is as fine as an unset variable.
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("${TEST_TOKEN}", "${file:/nonexistent/auth0-token}");
    std::fs::write(&job, text).unwrap();
    let after = status_without_env(&job);
    assert_eq!(after.code, 0, "{}", after.stderr);
    assert!(
        after.stdout.contains("state      complete")
            && after
                .stdout
                .contains("${file:/nonexistent/auth0-token} (`vendors.auth0.token`)"),
        "{}",
        after.stdout
    );
}

#[test]
fn a_variable_that_decides_a_path_must_be_set_and_is_named() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "in.csv", &rows_input(1));
    let job = auth0_job(dir.path(), "http://127.0.0.1:9", "in.csv", "");
    let text = std::fs::read_to_string(&job).unwrap().replace(
        "report = \"report.csv\"",
        "report = \"${REPORT_DIR}/report.csv\"",
    );
    std::fs::write(&job, text).unwrap();
    let status = status_without_env(&job);
    assert_eq!(status.code, 1, "{}", status.stdout);
    assert!(
        status
            .stderr
            .contains("REPORT_DIR (used by `output.report`)"),
        "{}",
        status.stderr
    );
    assert!(
        !status.stderr.contains("TEST_TOKEN"),
        "only what status needs is named: {}",
        status.stderr
    );
    let set = Command::new(UNLINKER)
        .args(["status", job.to_str().unwrap()])
        .env_clear()
        .env("REPORT_DIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(set.status.code(), Some(0));
    let out = String::from_utf8_lossy(&set.stdout);
    let expected = dir.path().join("report.csv.ckpt");
    assert!(
        out.contains(&expected.display().to_string()),
        "the checkpoint a run would use: {out}"
    );
}

#[test]
fn an_unreadable_input_or_a_damaged_checkpoint_is_reported_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.csv", &rows_input(4));
    let sim = Sim::start(&[
        "--seed",
        input.to_str().unwrap(),
        "--seed-vendor",
        "auth0",
        "--auth0-token",
        TOKEN,
    ]);
    let job = job(dir.path(), &sim);
    let run = unlinker(
        &["run", job.to_str().unwrap(), "--no-progress"],
        &[("TEST_TOKEN", TOKEN)],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let ckpt = dir.path().join("report.csv.ckpt");
    let status = status_without_env(&job);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(
        status.stdout.contains("state      complete"),
        "{}",
        status.stdout
    );
    // An input that cannot be read is reported too, not an error.
    std::fs::rename(&input, dir.path().join("moved.csv")).unwrap();
    let status = status_without_env(&job);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(
        status
            .stdout
            .contains("state      unknown: cannot read the input")
            && status.stdout.contains("unlinked   4"),
        "{}",
        status.stdout
    );

    let mut bytes = std::fs::read(&ckpt).unwrap();
    // Flip a byte inside the second line: a bad line followed by good ones is damage.
    let second = bytes.iter().position(|&b| b == b'\n').unwrap() + 5;
    bytes[second] ^= 0x20;
    std::fs::write(&ckpt, &bytes).unwrap();
    let status = status_without_env(&job);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(
        status.stdout.contains("state      damaged")
            && status.stdout.contains(&ckpt.display().to_string())
            && status.stdout.contains("line 2")
            && status.stdout.contains("checksum mismatch"),
        "{}",
        status.stdout
    );
}

#[test]
fn the_last_run_line_says_why_it_stopped_or_that_it_left_no_end_record() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "in.csv", &rows_input(400));
    let sim = Sim::start(&[
        "--seed",
        input.to_str().unwrap(),
        "--seed-vendor",
        "auth0",
        "--latency",
        "50ms",
        "--auth0-token",
        TOKEN,
    ]);
    let job = job(dir.path(), &sim);
    let ckpt = dir.path().join("report.csv.ckpt");
    let mut child = Command::new(UNLINKER)
        .args(["-q", "run", job.to_str().unwrap(), "--no-progress"])
        .env("TEST_TOKEN", TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the run has journaled something beyond the header, then kill it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lines = std::fs::read(&ckpt)
            .map(|b| b.iter().filter(|&&c| c == b'\n').count())
            .unwrap_or(0);
        if lines > 3 {
            break;
        }
        assert!(Instant::now() < deadline, "the run recorded nothing");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let status = status_without_env(&job);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert!(
        status
            .stdout
            .contains("last run   no end record: killed, or still running")
            && status.stdout.contains("its lock file last named pid="),
        "{}",
        status.stdout
    );

    // What the run writes at its end (`Checkpoint::record_stop`), as each reason reads.
    let binding = read_binding(&ckpt);
    for (why, shown) in [
        (
            "limit",
            "stopped: --limit reached (resumable: run it again) at 20",
        ),
        ("signal", "stopped: signal (resumable: run it again) at 20"),
        (
            "halt: vendor auth0 refused the credentials (HTTP 401)",
            "stopped: halt: vendor auth0 refused the credentials (HTTP 401) (fix the cause, then run it again) at 20",
        ),
        ("complete", "stopped: complete at 20"),
    ] {
        let (mut journal, _) = Checkpoint::open(&ckpt, &binding).unwrap();
        journal.record_stop(why).unwrap();
        drop(journal);
        let status = status_without_env(&job);
        assert_eq!(status.code, 0, "{}", status.stderr);
        assert!(
            status.stdout.contains(&format!("last run   {shown}")),
            "{why}: {}",
            status.stdout
        );
    }

    // And as real runs write it: a `--limit` run, then one that completes the job.
    for (extra, shown) in [
        (&["--limit", "5"][..], "stopped: --limit reached"),
        (&[][..], "stopped: complete at"),
    ] {
        let mut args = vec!["run", job.to_str().unwrap(), "--no-progress"];
        args.extend_from_slice(extra);
        let out = unlinker(&args, &[("TEST_TOKEN", TOKEN)]);
        assert!(out.code == 4 || out.code == 0, "{}", out.stderr);
        let status = status_without_env(&job);
        assert!(
            status.stdout.contains(&format!("last run   {shown}")),
            "{extra:?}: {}",
            status.stdout
        );
    }
}

/// The binding a checkpoint's header names, read through the library as `status` does.
fn read_binding(ckpt: &Path) -> Binding {
    unlinker::checkpoint::read(ckpt).unwrap().0
}
