//! Crash safety: the real binary is killed with SIGKILL at random moments against the simulator
//! (with latency, so calls are in flight), resumed each time, until the job completes.
//!
//! Asserted: every input line is in the final report exactly once; no row whose outcome was
//! recorded is ever sent again (the simulator's per-key counters do not move for it); every link
//! is removed exactly once; a row that was in flight at a kill ends `unlinked` or `absent`
//! "settled by read-back", never anything else.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;
use rand::RngExt;

const ROWS: usize = 400;

fn key(i: usize) -> String {
    format!("auth0|u{i}/github/{i}")
}

/// Per-key unlink calls the simulator has seen.
fn unlink_calls(sim: &Sim) -> BTreeMap<String, u64> {
    let counters = sim.counters();
    counters["keys"]["auth0"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v["unlink_calls"].as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

/// Lines with a recorded outcome, read through the library's own checkpoint reader.
fn recorded_lines(ckpt: &Path) -> BTreeSet<u64> {
    match unlinker::checkpoint::read(ckpt) {
        Ok((_, loaded)) => (2..=ROWS as u64 + 1)
            .filter(|l| loaded.outcome(*l).is_some())
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

#[test]
fn kill_9_at_random_moments_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::from("user_id,provider,identity_user_id\n");
    for i in 0..ROWS {
        input.push_str(&format!("auth0|u{i},github,{i}\n"));
    }
    let input_path = write(dir.path(), "in.csv", &input);
    let sim = Sim::start(&[
        "--seed",
        input_path.to_str().unwrap(),
        "--seed-vendor",
        "auth0",
        "--latency",
        "40ms",
        "--auth0-token",
        TOKEN,
    ]);
    let job = auth0_job(dir.path(), &sim.url, "in.csv", "");
    let ckpt = dir.path().join("report.csv.ckpt");

    let mut rng = rand::rng();
    // key → unlink calls when its outcome was first seen recorded.
    let mut frozen: BTreeMap<String, u64> = BTreeMap::new();
    let mut kills = 0;
    let mut done = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    for _ in 0..80 {
        assert!(Instant::now() < deadline, "did not complete in time");
        let mut child = Command::new(UNLINKER)
            .args(["-q", "run", job.to_str().unwrap(), "--no-progress"])
            .env("TEST_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.random_range(20..350)));
        match child.try_wait().unwrap() {
            Some(status) => {
                assert_eq!(
                    status.code(),
                    Some(0),
                    "a run that finished by itself must complete"
                );
                done = true;
            }
            None => {
                child.kill().unwrap();
                child.wait().unwrap();
                kills += 1;
            }
        }
        // Let requests already on the wire reach the simulator before reading its counters.
        std::thread::sleep(Duration::from_millis(100));
        let calls = unlink_calls(&sim);
        for line in recorded_lines(&ckpt) {
            let k = key(line as usize - 2);
            let now = calls.get(&k).copied().unwrap_or(0);
            match frozen.get(&k) {
                Some(&before) => {
                    assert_eq!(now, before, "row {k} has an outcome but was sent again")
                }
                None => {
                    frozen.insert(k, now);
                }
            }
        }
        if done {
            break;
        }
    }
    assert!(done, "the job never completed");
    assert!(
        kills >= 2,
        "the test must actually interrupt runs ({kills} kills)"
    );

    let rows = read_report(&dir.path().join("report.csv"));
    let lines: Vec<u64> = rows.iter().map(|r| r["line"].parse().unwrap()).collect();
    let unique: BTreeSet<u64> = lines.iter().copied().collect();
    assert_eq!(lines.len(), ROWS, "report rows: every line exactly once");
    assert_eq!(
        unique,
        (2..=ROWS as u64 + 1).collect(),
        "every input line present"
    );

    let mut settled = 0;
    for r in &rows {
        match r["outcome"].as_str() {
            "unlinked" => {}
            "absent" => {
                assert!(
                    r["message"].contains("settled by read-back"),
                    "unexplained absent: {r:?}"
                );
                settled += 1;
            }
            other => panic!("unexpected outcome {other}: {r:?}"),
        }
    }
    let counters = sim.counters();
    let keys = counters["keys"]["auth0"].as_object().unwrap();
    for i in 0..ROWS {
        let k = key(i);
        assert_eq!(keys[&k]["removed"], 1, "link {k} removed exactly once");
    }
    assert!(
        sim.get_json("/_sim/links?vendor=auth0")
            .as_array()
            .is_some_and(|a| a.is_empty()),
        "every link is gone"
    );
    eprintln!("{kills} kills, {settled} rows settled by read-back");
}
