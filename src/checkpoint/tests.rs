//! Unit tests of the checkpoint as a whole: records round-trip through the journal, torn ends
//! and damage are told apart, the lock keeps runs apart, and the report is continued or rebuilt.
//! They go through the public API, as a run does, and look at the bytes it leaves on disk.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::record::fast_outcome;
use super::*;
use crate::report::{self, Outcome, ReportFormat, ReportRow, ReportWriter, encode_row};

pub(super) fn binding() -> Binding {
    Binding {
        job: "auth0-cleanup".into(),
        input_hash: 0x0123_4567_89ab_cdef_0011_2233_4455_6677,
        input_len: 10_000,
    }
}

fn row(line: u64, outcome: Outcome) -> ReportRow {
    ReportRow {
        line,
        vendor: "auth0".into(),
        key: format!("auth0|{line}/github/{line}"),
        reference: String::new(),
        outcome,
        http_status: Some(204),
        vendor_code: None,
        attempts: 1,
        elapsed_ms: 12,
        request_id: Some(format!("req-{line}")),
        request: "DELETE https://acme.eu.auth0.com/api/v2/users/x/identities/github/1".into(),
        message: "tab\there, \"quotes\", newline\nthere".into(),
        finished_at: "2026-11-23T08:15:00.000Z".into(),
    }
}

fn counts(pairs: &[(Outcome, u64)]) -> BTreeMap<Outcome, u64> {
    let mut all: BTreeMap<Outcome, u64> = Outcome::ALL.into_iter().map(|o| (o, 0)).collect();
    all.extend(pairs.iter().copied());
    all
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn csv_of(rows: &[ReportRow]) -> Vec<u8> {
    let mut bytes = format!("{}\n", report::COLUMNS.join(",")).into_bytes();
    for r in rows {
        bytes.extend(encode_row(r, ReportFormat::Csv));
    }
    bytes
}

/// Line `n` (1-based) of the journal's bytes starts at the returned offset.
fn line_start(bytes: &[u8], n: usize) -> usize {
    let mut starts = std::iter::once(0).chain(
        bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i + 1),
    );
    starts.nth(n - 1).unwrap()
}

#[test]
fn round_trip_of_every_record_kind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.ckpt");
    let (mut ckpt, loaded) = Checkpoint::open(&path, &binding()).unwrap();
    assert_eq!(loaded.rows_recorded(), 0);
    assert_eq!(loaded.report_len(), 0);
    assert_eq!(loaded.in_doubt().count(), 0);

    ckpt.intent(2, 0).unwrap();
    ckpt.step_done(2, 0).unwrap();
    ckpt.intent(2, 1).unwrap(); // in doubt at step 1
    ckpt.intent(3, 0).unwrap();
    ckpt.settled(3).unwrap(); // pending, not in doubt
    ckpt.intent(4, 0).unwrap();
    ckpt.outcome(&row(4, Outcome::Unlinked), 150).unwrap();
    ckpt.outcome(&row(5, Outcome::Failed), 230).unwrap();
    ckpt.outcome(&row(6, Outcome::Invalid), 300).unwrap();
    ckpt.mark_report_len(280).unwrap();
    ckpt.intent(7, 0).unwrap();
    ckpt.sync().unwrap();
    drop(ckpt);

    let (bound, loaded) = read(&path).unwrap();
    assert_eq!(bound, binding());
    assert_eq!(loaded.outcome(2), None);
    assert_eq!(loaded.steps_done(2), 1);
    assert_eq!(loaded.is_in_doubt(2), Some(1));
    assert_eq!(loaded.outcome(3), None);
    assert_eq!(loaded.is_in_doubt(3), None);
    assert_eq!(loaded.steps_done(3), 0);
    assert_eq!(loaded.outcome(4), Some(Outcome::Unlinked));
    assert_eq!(loaded.is_in_doubt(4), None);
    assert_eq!(loaded.outcome(5), Some(Outcome::Failed));
    assert_eq!(loaded.outcome(6), Some(Outcome::Invalid));
    assert_eq!(loaded.in_doubt().collect::<Vec<_>>(), vec![(2, 1), (7, 0)]);
    assert_eq!(loaded.rows_recorded(), 3);
    assert_eq!(
        loaded.counts(),
        counts(&[
            (Outcome::Unlinked, 1),
            (Outcome::Failed, 1),
            (Outcome::Invalid, 1)
        ])
    );
    assert_eq!(loaded.report_len(), 280);
    assert_eq!(loaded.max_line(), 7);
    assert_eq!(loaded.dropped_tail_bytes(), 0);
    assert!(!loaded.needs_rebuild());

    // The bytes: a header, then `<json>\t<xxh3 hex>\n` per record.
    let text = fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 12);
    for line in &lines {
        let (json, sum) = line.rsplit_once('\t').unwrap();
        assert_eq!(
            sum,
            format!("{:016x}", xxhash_rust::xxh3::xxh3_64(json.as_bytes()))
        );
    }
    let header: serde_json::Value =
        serde_json::from_str(lines[0].rsplit_once('\t').unwrap().0).unwrap();
    assert_eq!(header["v"], 1);
    assert_eq!(header["job"], "auth0-cleanup");
    assert_eq!(header["input_hash"], "0123456789abcdef0011223344556677");
    assert_eq!(header["input_len"], 10_000);
    assert!(header["created"].as_str().unwrap().ends_with('Z'));
    assert!(lines[1].starts_with(r#"{"t":"intent","line":2,"step":0}"#));
    assert!(lines[5].starts_with(r#"{"t":"settled","line":3}"#));
    let outcome: serde_json::Value =
        serde_json::from_str(lines[7].rsplit_once('\t').unwrap().0).unwrap();
    assert_eq!(outcome["t"], "outcome");
    assert_eq!(outcome["report_len"], 150);
    let stored: ReportRow = serde_json::from_value(outcome["row"].clone()).unwrap();
    assert_eq!(stored, row(4, Outcome::Unlinked));

    // Reopening continues the same journal with the same state.
    let (mut ckpt, again) = Checkpoint::open(&path, &binding()).unwrap();
    assert_eq!(again.in_doubt().collect::<Vec<_>>(), vec![(2, 1), (7, 0)]);
    ckpt.outcome(&row(7, Outcome::Absent), 400).unwrap();
    drop(ckpt);
    let (_, loaded) = read(&path).unwrap();
    assert_eq!(loaded.outcome(7), Some(Outcome::Absent));
    assert_eq!(loaded.report_len(), 400);
    assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 13);
}

#[test]
fn a_torn_last_record_is_ignored_at_every_cut_and_appending_after_it_works() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.ckpt");
    let (mut ckpt, _) = Checkpoint::open(&path, &binding()).unwrap();
    ckpt.intent(2, 0).unwrap();
    ckpt.outcome(&row(2, Outcome::Unlinked), 100).unwrap();
    ckpt.intent(3, 0).unwrap();
    ckpt.flush().unwrap();
    let before_last = fs::metadata(&path).unwrap().len() as usize;
    ckpt.outcome(&row(3, Outcome::Absent), 200).unwrap();
    drop(ckpt);
    let full = fs::read(&path).unwrap();
    assert!(full.len() - before_last > 300);

    let cut_path = dir.path().join("cut.ckpt");
    for cut in before_last..full.len() {
        fs::write(&cut_path, &full[..cut]).unwrap();
        let (_, loaded) = read(&cut_path).unwrap();
        assert_eq!(loaded.outcome(2), Some(Outcome::Unlinked), "cut at {cut}");
        assert_eq!(loaded.outcome(3), None, "cut at {cut}");
        assert_eq!(loaded.is_in_doubt(3), Some(0), "cut at {cut}");
        assert_eq!(loaded.report_len(), 100, "cut at {cut}");
        assert_eq!(loaded.dropped_tail_bytes(), (cut - before_last) as u64);

        let (mut ckpt, loaded) = Checkpoint::open(&cut_path, &binding()).unwrap();
        assert_eq!(loaded.is_in_doubt(3), Some(0));
        assert_eq!(
            fs::metadata(&cut_path).unwrap().len(),
            before_last as u64,
            "the torn end is cut off before appending"
        );
        ckpt.settled(3).unwrap();
        drop(ckpt);
        let (_, loaded) = read(&cut_path).unwrap();
        assert_eq!(loaded.is_in_doubt(3), None, "cut at {cut}");
        assert_eq!(loaded.outcome(2), Some(Outcome::Unlinked));
        assert_eq!(loaded.dropped_tail_bytes(), 0);
    }
    // The whole file loads with the last record.
    let (_, loaded) = read(&path).unwrap();
    assert_eq!(loaded.outcome(3), Some(Outcome::Absent));
}

#[test]
fn trailing_zero_bytes_and_a_bad_last_checksum_are_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.ckpt");
    let (mut ckpt, _) = Checkpoint::open(&path, &binding()).unwrap();
    ckpt.outcome(&row(2, Outcome::Absent), 90).unwrap();
    ckpt.intent(3, 0).unwrap();
    drop(ckpt);
    let good = fs::read(&path).unwrap();

    // Zero padding after the last record, as a power loss can leave it.
    let mut padded = good.clone();
    padded.extend_from_slice(&[0; 8192]);
    fs::write(&path, &padded).unwrap();
    let (_, loaded) = read(&path).unwrap();
    assert_eq!(loaded.outcome(2), Some(Outcome::Absent));
    assert_eq!(loaded.is_in_doubt(3), Some(0));
    assert_eq!(loaded.dropped_tail_bytes(), 8192);
    let (mut ckpt, _) = Checkpoint::open(&path, &binding()).unwrap();
    assert_eq!(fs::read(&path).unwrap(), good);
    ckpt.outcome(&row(3, Outcome::Unlinked), 180).unwrap();
    drop(ckpt);
    let (_, loaded) = read(&path).unwrap();
    assert_eq!(loaded.outcome(3), Some(Outcome::Unlinked));
    assert_eq!(loaded.report_len(), 180);

    // A complete last line whose checksum does not match, then stale bytes with newlines.
    let good = fs::read(&path).unwrap();
    let last = line_start(&good, 4);
    let mut damaged = good.clone();
    damaged[last + 10] ^= 0x01;
    damaged.extend_from_slice(b"stale\n\0\0\0\ngarbage");
    fs::write(&path, &damaged).unwrap();
    let (_, loaded) = read(&path).unwrap();
    assert_eq!(loaded.outcome(3), None);
    assert_eq!(loaded.is_in_doubt(3), Some(0));
    assert_eq!(loaded.dropped_tail_bytes(), (damaged.len() - last) as u64);
    let (_, _) = Checkpoint::open(&path, &binding()).unwrap();
    assert_eq!(fs::read(&path).unwrap(), &good[..last]);
}

#[test]
fn damage_in_the_middle_is_an_error_that_names_the_line_and_leaves_the_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.ckpt");
    let (mut ckpt, _) = Checkpoint::open(&path, &binding()).unwrap();
    for line in 2..=5 {
        ckpt.outcome(&row(line, Outcome::Unlinked), line * 100)
            .unwrap();
    }
    drop(ckpt);
    let mut bytes = fs::read(&path).unwrap();
    let third = line_start(&bytes, 3);
    bytes[third + 30] ^= 0x20;
    fs::write(&path, &bytes).unwrap();

    for err in [
        read(&path).unwrap_err(),
        Checkpoint::open(&path, &binding()).unwrap_err(),
    ] {
        match &err {
            CheckpointError::Corrupt {
                path: p,
                line,
                reason,
            } => {
                assert_eq!(p, &path);
                assert_eq!(*line, 3);
                assert_eq!(reason, "checksum mismatch");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        let message = err.to_string();
        assert!(message.contains("job.ckpt"), "{message}");
        assert!(message.contains("line 3"), "{message}");
        assert!(message.contains("--fresh"), "{message}");
    }
    assert_eq!(fs::read(&path).unwrap(), bytes);

    // A half-written record followed by a good one is damage too.
    let good = [
        &bytes[..third],
        &bytes[third..third + 20],
        &bytes[line_start(&bytes, 4)..],
    ]
    .concat();
    fs::write(&path, &good).unwrap();
    assert!(matches!(
        read(&path),
        Err(CheckpointError::Corrupt { line: 3, .. })
    ));
}

#[test]
fn well_formed_records_that_make_no_sense_are_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.ckpt");
    drop(Checkpoint::open(&path, &binding()).unwrap());
    let header = fs::read(&path).unwrap();
    for (json, reason) in [
        (
            r#"{"t":"intent","line":10002,"step":0}"#,
            "line 10002 is outside the input (1 to 10001)",
        ),
        (r#"{"t":"step","line":2,"step":3}"#, "step 3 is not below 3"),
        (r#"{"t":"settled"}"#, "record without a line"),
        (r#"{"t":"report"}"#, "Report record without `len`"),
    ] {
        let mut line = json.as_bytes().to_vec();
        journal::seal(&mut line);
        fs::write(&path, [header.as_slice(), &line].concat()).unwrap();
        match read(&path) {
            Err(CheckpointError::Corrupt {
                line: 2, reason: r, ..
            }) => {
                assert_eq!(r, reason)
            }
            other => panic!("{json}: {other:?}"),
        }
    }
    let mut line = br#"{"t":"rename","line":2}"#.to_vec();
    journal::seal(&mut line);
    fs::write(&path, [header.as_slice(), &line].concat()).unwrap();
    match read(&path) {
        Err(CheckpointError::Corrupt {
            line: 2, reason, ..
        }) => {
            assert!(reason.starts_with("unreadable record: unknown variant `rename`"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_file_that_is_not_a_checkpoint_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.csv");
    fs::write(&path, "line,vendor\n2,auth0\n").unwrap();
    match Checkpoint::open(&path, &binding()) {
        Err(CheckpointError::Corrupt {
            line: 1, reason, ..
        }) => {
            assert_eq!(reason, "not an unlinker checkpoint: no valid header")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fs::read(&path).unwrap(), b"line,vendor\n2,auth0\n");

    // An empty or all-zero file holds nothing: it is started afresh.
    fs::write(&path, [0u8; 100]).unwrap();
    assert!(matches!(read(&path), Err(CheckpointError::NotFound { .. })));
    let (_, loaded) = Checkpoint::open(&path, &binding()).unwrap();
    assert_eq!(loaded.rows_recorded(), 0);
    assert_eq!(read(&path).unwrap().0, binding());

    let missing = dir.path().join("missing.ckpt");
    let err = read(&missing).unwrap_err();
    assert!(matches!(err, CheckpointError::NotFound { .. }));
    assert!(err.to_string().contains("missing.ckpt"));
}

#[test]
fn a_changed_input_or_job_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.ckpt");
    let (mut ckpt, _) = Checkpoint::open(&path, &binding()).unwrap();
    ckpt.outcome(&row(2, Outcome::Unlinked), 100).unwrap();
    drop(ckpt);

    let other_hash = Binding {
        input_hash: 7,
        ..binding()
    };
    let err = Checkpoint::open(&path, &other_hash).unwrap_err();
    match &err {
        CheckpointError::InputChanged {
            recorded_len,
            input_len,
            recorded_hash,
            input_hash,
            ..
        } => {
            assert_eq!(*recorded_len, 10_000);
            assert_eq!(*input_len, 10_000);
            assert_eq!(*recorded_hash, binding().input_hash);
            assert_eq!(*input_hash, 7);
        }
        other => panic!("{other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.starts_with("the input file changed since checkpoint"),
        "{message}"
    );
    assert!(message.contains("job.ckpt"), "{message}");
    assert!(message.contains("--fresh"), "{message}");

    let longer = Binding {
        input_len: 10_001,
        ..binding()
    };
    assert!(matches!(
        Checkpoint::open(&path, &longer),
        Err(CheckpointError::InputChanged {
            input_len: 10_001,
            ..
        })
    ));
    let other_job = Binding {
        job: "gigya-cleanup".into(),
        ..binding()
    };
    match Checkpoint::open(&path, &other_job) {
        Err(CheckpointError::JobChanged { recorded, job, .. }) => {
            assert_eq!(recorded, "auth0-cleanup");
            assert_eq!(job, "gigya-cleanup");
        }
        other => panic!("{other:?}"),
    }
    // Refusing released the lock and changed nothing.
    let (_, loaded) = Checkpoint::open(&path, &binding()).unwrap();
    assert_eq!(loaded.outcome(2), Some(Outcome::Unlinked));
}

#[test]
fn a_second_open_is_locked_out_until_the_first_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.ckpt");
    let (first, _) = Checkpoint::open(&path, &binding()).unwrap();
    assert_eq!(first.lock_path(), dir.path().join("job.ckpt.lock"));

    let err = Checkpoint::open(&path, &binding()).unwrap_err();
    let CheckpointError::Locked { path: p, holder } = &err else {
        panic!("expected Locked, got {err:?}");
    };
    assert_eq!(p, &path);
    let pid = format!("pid={} ", std::process::id());
    assert!(holder.starts_with(&pid), "{holder}");
    assert!(holder.contains(" started="), "{holder}");
    let message = err.to_string();
    assert!(
        message.contains("job.ckpt is in use by another run"),
        "{message}"
    );
    assert!(message.contains(&pid), "{message}");
    // --fresh must not move a running job's files away either.
    assert!(matches!(
        Checkpoint::open_fresh(&path, &binding(), None),
        Err(CheckpointError::Locked { .. })
    ));
    assert!(path.exists());

    drop(first);
    let (second, _) = Checkpoint::open(&path, &binding()).unwrap();
    drop(second);
}

#[test]
fn a_lock_file_left_behind_does_not_block() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.ckpt");
    let lock_path = dir.path().join("job.ckpt.lock");
    fs::write(
        &lock_path,
        "pid=999999 host=gone started=2020-01-01T00:00:00Z\n",
    )
    .unwrap();
    let (ckpt, _) = Checkpoint::open(&path, &binding()).unwrap();
    let note = fs::read_to_string(&lock_path).unwrap();
    assert!(
        note.starts_with(&format!("pid={} ", std::process::id())),
        "{note}"
    );
    assert_eq!(note.lines().count(), 1);
    drop(ckpt);
    assert!(
        lock_path.exists(),
        "the lock file stays; only the OS lock is released"
    );
}

#[test]
fn journal_and_lock_file_are_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.ckpt");
    let lock_path = dir.path().join("job.ckpt.lock");
    let (ckpt, _) = Checkpoint::open(&path, &binding()).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&lock_path), 0o600);
    drop(ckpt);

    use std::os::unix::fs::PermissionsExt;
    for p in [&path, &lock_path] {
        fs::set_permissions(p, fs::Permissions::from_mode(0o644)).unwrap();
    }
    let (_ckpt, _) = Checkpoint::open(&path, &binding()).unwrap();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&lock_path), 0o600);
    assert!(!dir.path().join("job.ckpt.new").exists());
}

#[test]
fn status_reads_what_a_running_job_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.ckpt");
    let (mut ckpt, _) = Checkpoint::open(&path, &binding()).unwrap();
    ckpt.intent(2, 0).unwrap();
    ckpt.flush().unwrap();
    ckpt.intent(3, 0).unwrap(); // still buffered

    let (bound, loaded) = read(&path).unwrap();
    assert_eq!(bound.job, "auth0-cleanup");
    assert_eq!(loaded.in_doubt().collect::<Vec<_>>(), vec![(2, 0)]);
    ckpt.flush().unwrap();
    let (_, loaded) = read(&path).unwrap();
    assert_eq!(loaded.in_doubt().collect::<Vec<_>>(), vec![(2, 0), (3, 0)]);
}

#[test]
fn in_doubt_means_an_intent_with_nothing_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.ckpt");
    let (mut ckpt, _) = Checkpoint::open(&path, &binding()).unwrap();
    ckpt.intent(2, 0).unwrap(); // sent, no answer recorded
    ckpt.intent(3, 0).unwrap();
    ckpt.settled(3).unwrap(); // retryable answer, then halted
    ckpt.intent(4, 0).unwrap();
    ckpt.step_done(4, 0).unwrap();
    ckpt.intent(4, 1).unwrap(); // unlinked, user deletion in flight
    ckpt.intent(5, 0).unwrap();
    ckpt.step_done(5, 0).unwrap(); // unlinked, next step not started
    ckpt.intent(6, 0).unwrap();
    ckpt.outcome(&row(6, Outcome::Absent), 99).unwrap();
    ckpt.intent(7, 0).unwrap();
    ckpt.intent(7, 0).unwrap(); // re-sent after a retryable answer
    drop(ckpt);

    let (_, loaded) = read(&path).unwrap();
    assert_eq!(
        loaded.in_doubt().collect::<Vec<_>>(),
        vec![(2, 0), (4, 1), (7, 0)]
    );
    assert_eq!(loaded.is_in_doubt(2), Some(0));
    assert_eq!(loaded.is_in_doubt(3), None);
    assert_eq!(loaded.is_in_doubt(4), Some(1));
    assert_eq!(loaded.is_in_doubt(5), None);
    assert_eq!(loaded.is_in_doubt(6), None);
    assert_eq!(loaded.is_in_doubt(8), None);
}

#[test]
fn steps_done_tells_where_a_row_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.ckpt");
    let (mut ckpt, _) = Checkpoint::open(&path, &binding()).unwrap();
    ckpt.intent(2, 0).unwrap();
    ckpt.step_done(2, 0).unwrap();
    ckpt.intent(3, 0).unwrap();
    ckpt.step_done(3, 0).unwrap();
    ckpt.intent(3, 1).unwrap();
    ckpt.step_done(3, 1).unwrap();
    ckpt.intent(4, 0).unwrap();
    ckpt.step_done(4, 0).unwrap();
    ckpt.intent(4, 1).unwrap();
    ckpt.outcome(&row(4, Outcome::Failed), 100).unwrap(); // user deletion refused
    drop(ckpt);

    let (mut ckpt, mut loaded) = Checkpoint::open(&path, &binding()).unwrap();
    assert_eq!(loaded.steps_done(2), 1);
    assert_eq!(loaded.steps_done(3), 2);
    assert_eq!(loaded.outcome(3), None);
    assert_eq!(loaded.steps_done(9), 0);
    assert_eq!(loaded.outcome(4), Some(Outcome::Failed));
    // --retry-failed restarts row 4 at the step that failed.
    assert_eq!(ckpt.forget_failed(&mut loaded).unwrap(), 1);
    assert_eq!(loaded.outcome(4), None);
    assert_eq!(loaded.steps_done(4), 1);
    assert_eq!(loaded.is_in_doubt(4), None);
}

#[test]
fn retry_failed_keeps_each_forgotten_rows_message_until_it_is_recorded_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.ckpt");
    let (mut ckpt, _) = Checkpoint::open(&path, &binding()).unwrap();
    let failed = |line: u64, message: &str| ReportRow {
        message: message.into(),
        ..row(line, Outcome::Failed)
    };
    ckpt.outcome(&failed(2, "HTTP 500"), 10).unwrap();
    ckpt.outcome(&failed(3, &"x".repeat(5000)), 20).unwrap();
    ckpt.outcome(&row(4, Outcome::Unlinked), 30).unwrap();
    drop(ckpt);

    let (mut ckpt, mut loaded) = Checkpoint::open(&path, &binding()).unwrap();
    assert_eq!(loaded.failed_before(2), None, "not forgotten yet");
    ckpt.forget_failed(&mut loaded).unwrap();
    assert_eq!(loaded.failed_before(2), Some("HTTP 500"));
    let cut = loaded.failed_before(3).unwrap();
    assert_eq!(cut.chars().count(), crate::checkpoint::FAILED_BEFORE_CHARS);
    assert_eq!(loaded.failed_before(4), None);
    // The retry of line 2 is recorded; line 3's is not (the run was killed).
    ckpt.intent(2, 0).unwrap();
    ckpt.intent(3, 0).unwrap();
    ckpt.outcome(&row(2, Outcome::Unlinked), 40).unwrap();
    drop(ckpt);

    let (_, loaded) = Checkpoint::open(&path, &binding()).unwrap();
    assert_eq!(loaded.failed_before(2), None);
    assert_eq!(
        loaded.failed_before(3).map(|m| m.chars().count()),
        Some(200)
    );
    assert_eq!(loaded.is_in_doubt(3), Some(0));
}

#[test]
fn writes_outside_the_input_or_the_steps_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.ckpt");
    let (mut ckpt, _) = Checkpoint::open(&path, &binding()).unwrap();
    for result in [
        ckpt.intent(0, 0),
        ckpt.intent(10_002, 0),
        ckpt.step_done(2, MAX_STEPS),
        ckpt.settled(0),
        ckpt.outcome(&row(20_000, Outcome::Absent), 1),
    ] {
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }
    ckpt.intent(10_001, 2).unwrap();
    drop(ckpt);
    let (_, loaded) = read(&path).unwrap();
    assert_eq!(loaded.in_doubt().collect::<Vec<_>>(), vec![(10_001, 2)]);
    assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 2);
}

/// Write `rows` as a run does: report row, then its outcome record.
fn record(ckpt: &mut Checkpoint, report: &mut ReportWriter, rows: &[ReportRow]) {
    for r in rows {
        ckpt.intent(r.line, 0).unwrap();
        ckpt.flush().unwrap();
        report.write(r).unwrap();
        ckpt.outcome(r, report.len()).unwrap();
    }
    report.flush().unwrap();
    ckpt.flush().unwrap();
}

#[test]
fn retry_failed_then_rebuild_writes_each_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.ckpt");
    let report_path = dir.path().join("report.csv");
    let fmt = ReportFormat::Csv;
    let first = [
        row(2, Outcome::Unlinked),
        row(3, Outcome::Failed),
        row(4, Outcome::Failed),
        row(5, Outcome::Absent),
    ];

    // Run 1.
    let (mut ckpt, loaded) = Checkpoint::open(&path, &binding()).unwrap();
    let (mut report, start) = ckpt.open_report(&loaded, &report_path, fmt).unwrap();
    assert_eq!(start, ReportStart::Created);
    record(&mut ckpt, &mut report, &first);
    drop((ckpt, report));
    assert_eq!(fs::read(&report_path).unwrap(), csv_of(&first));

    // Run 2, --retry-failed: row 3 is retried, then the run dies before row 4.
    let (mut ckpt, mut loaded) = Checkpoint::open(&path, &binding()).unwrap();
    assert_eq!(loaded.counts()[&Outcome::Failed], 2);
    assert_eq!(ckpt.forget_failed(&mut loaded).unwrap(), 2);
    assert!(loaded.needs_rebuild());
    assert_eq!(loaded.rows_recorded(), 2);
    let (mut report, start) = ckpt.open_report(&loaded, &report_path, fmt).unwrap();
    assert_eq!(start, ReportStart::Rebuilt);
    let kept = [first[0].clone(), first[3].clone()];
    assert_eq!(fs::read(&report_path).unwrap(), csv_of(&kept));
    let retried = row(3, Outcome::Unlinked);
    record(&mut ckpt, &mut report, std::slice::from_ref(&retried));
    drop((ckpt, report));

    // Run 3, no flag: row 4 stays pending (the forget is durable), the report continues.
    let (mut ckpt, mut loaded) = Checkpoint::open(&path, &binding()).unwrap();
    assert!(!loaded.needs_rebuild());
    assert_eq!(loaded.outcome(2), Some(Outcome::Unlinked));
    assert_eq!(loaded.outcome(3), Some(Outcome::Unlinked));
    assert_eq!(loaded.outcome(4), None);
    assert_eq!(loaded.outcome(5), Some(Outcome::Absent));
    assert_eq!(loaded.forget_failed(), 0);
    let expected = csv_of(&[kept[0].clone(), kept[1].clone(), retried.clone()]);
    assert_eq!(loaded.report_len(), expected.len() as u64);
    let (report, start) = ckpt.open_report(&loaded, &report_path, fmt).unwrap();
    assert_eq!(start, ReportStart::Continued { cut: 0 });
    drop((ckpt, report));
    assert_eq!(fs::read(&report_path).unwrap(), expected);

    // The report lost to a power failure: rebuilt, each line once, line 4 not at all.
    fs::write(&report_path, &expected[..expected.len() / 2]).unwrap();
    let (mut ckpt, loaded) = Checkpoint::open(&path, &binding()).unwrap();
    let (report, start) = ckpt.open_report(&loaded, &report_path, fmt).unwrap();
    assert_eq!(start, ReportStart::Rebuilt);
    assert_eq!(report.len(), expected.len() as u64);
    drop((ckpt, report));
    assert_eq!(fs::read(&report_path).unwrap(), expected);
    let lines: Vec<String> = csv::Reader::from_reader(&expected[..])
        .records()
        .map(|r| r.unwrap()[0].to_string())
        .collect();
    assert_eq!(lines, ["2", "5", "3"]);
    let (_, loaded) = read(&path).unwrap();
    assert_eq!(
        loaded.report_len(),
        fs::metadata(&report_path).unwrap().len()
    );
}

#[test]
fn rebuild_keeps_only_the_last_outcome_record_of_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.ckpt");
    let report_path = dir.path().join("report.jsonl");
    let (mut ckpt, _) = Checkpoint::open(&path, &binding()).unwrap();
    ckpt.outcome(&row(2, Outcome::Failed), 1).unwrap();
    ckpt.outcome(&row(3, Outcome::Unlinked), 2).unwrap();
    ckpt.outcome(&row(2, Outcome::Absent), 3).unwrap();
    ckpt.outcome(&row(4, Outcome::Duplicate), 4).unwrap();
    ckpt.intent(4, 0).unwrap(); // row 4's outcome superseded: pending again
    drop(ckpt);

    let (_, loaded) = read(&path).unwrap();
    assert_eq!(loaded.outcome(2), Some(Outcome::Absent));
    assert_eq!(loaded.outcome(4), None);
    let mut writer = ReportWriter::create(&report_path, ReportFormat::Jsonl).unwrap();
    let len = rebuild_report(&path, &loaded, &mut writer).unwrap();
    drop(writer);
    let text = fs::read(&report_path).unwrap();
    assert_eq!(len, text.len() as u64);
    let expected = [
        encode_row(&row(3, Outcome::Unlinked), ReportFormat::Jsonl),
        encode_row(&row(2, Outcome::Absent), ReportFormat::Jsonl),
    ]
    .concat();
    assert_eq!(text, expected);
    assert_eq!(mode(&report_path), 0o600);
}

#[test]
fn open_report_cuts_rows_that_were_never_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.ckpt");
    let report_path = dir.path().join("report.csv");
    let (mut ckpt, loaded) = Checkpoint::open(&path, &binding()).unwrap();
    let (mut report, _) = ckpt
        .open_report(&loaded, &report_path, ReportFormat::Csv)
        .unwrap();
    record(&mut ckpt, &mut report, &[row(2, Outcome::Unlinked)]);
    // Killed after writing row 3 to the report but before recording it.
    ckpt.intent(3, 0).unwrap();
    ckpt.flush().unwrap();
    report.write(&row(3, Outcome::Unlinked)).unwrap();
    report.flush().unwrap();
    let extra = encode_row(&row(3, Outcome::Unlinked), ReportFormat::Csv).len() as u64;
    drop((ckpt, report));

    let (mut ckpt, loaded) = Checkpoint::open(&path, &binding()).unwrap();
    assert_eq!(loaded.is_in_doubt(3), Some(0));
    let (report, start) = ckpt
        .open_report(&loaded, &report_path, ReportFormat::Csv)
        .unwrap();
    assert_eq!(start, ReportStart::Continued { cut: extra });
    assert_eq!(report.len(), loaded.report_len());
    let expected = csv_of(&[row(2, Outcome::Unlinked)]);
    assert_eq!(fs::read(&report_path).unwrap(), expected);
    drop((ckpt, report));

    // Full length, but its end zero-filled by a power loss: rebuilt, not continued.
    let mut zeroed = expected.clone();
    let n = zeroed.len();
    zeroed[n - 50..].fill(0);
    fs::write(&report_path, &zeroed).unwrap();
    let (mut ckpt, loaded) = Checkpoint::open(&path, &binding()).unwrap();
    let (_, start) = ckpt
        .open_report(&loaded, &report_path, ReportFormat::Csv)
        .unwrap();
    assert_eq!(start, ReportStart::Rebuilt);
    assert_eq!(fs::read(&report_path).unwrap(), expected);
}

#[test]
fn fresh_archives_journal_and_report_with_one_stamp() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.csv.ckpt");
    let report_path = dir.path().join("report.csv");
    let (mut ckpt, _) = Checkpoint::open(&path, &binding()).unwrap();
    ckpt.outcome(&row(2, Outcome::Unlinked), 100).unwrap();
    drop(ckpt);
    fs::write(&report_path, "old report").unwrap();

    let changed = Binding {
        input_hash: 1,
        ..binding()
    };
    let (ckpt, loaded, archived) =
        Checkpoint::open_fresh(&path, &changed, Some(&report_path)).unwrap();
    assert_eq!(loaded.rows_recorded(), 0);
    assert_eq!(archived.len(), 2);
    let names: Vec<String> = archived
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let stamp = names[1]
        .strip_prefix("report.")
        .and_then(|n| n.strip_suffix(".csv"))
        .unwrap();
    assert_eq!(stamp.len(), "20261123T081500Z".len());
    assert_eq!(names[0], format!("report.{stamp}.csv.ckpt"));
    assert_eq!(fs::read_to_string(&archived[1]).unwrap(), "old report");
    let (old_binding, old) = read(&archived[0]).unwrap();
    assert_eq!(old_binding, binding());
    assert_eq!(old.outcome(2), Some(Outcome::Unlinked));
    drop(ckpt);
    let (now, fresh) = read(&path).unwrap();
    assert_eq!(now, changed);
    assert_eq!(fresh.rows_recorded(), 0);
    assert!(!report_path.exists());

    // Nothing to archive: nothing listed.
    fs::remove_file(&path).unwrap();
    let (_, _, archived) = Checkpoint::open_fresh(&path, &changed, Some(&report_path)).unwrap();
    assert!(archived.is_empty());
}

const CHILD_ENV: &str = "UNLINKER_CKPT_TEST_CHILD";

/// The writer killed by `a_killed_run_leaves_a_loadable_journal_and_no_lock`; does nothing
/// unless started by it.
#[test]
#[ignore = "run as a child process by another test"]
fn child_writes_until_killed() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let (mut ckpt, _) = Checkpoint::open(Path::new(&path), &binding()).unwrap();
    for i in 0u64.. {
        let line = 2 + i % 9000;
        ckpt.intent(line, 0).unwrap();
        ckpt.flush().unwrap();
        ckpt.outcome(&row(line, Outcome::Unlinked), i).unwrap();
    }
}

#[test]
fn a_killed_run_leaves_a_loadable_journal_and_no_lock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.ckpt");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "checkpoint::tests::child_writes_until_killed",
            "--exact",
            "--ignored",
            "--quiet",
        ])
        .env(CHILD_ENV, &path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    while fs::metadata(&path).map_or(0, |m| m.len()) < 1_000_000 {
        assert!(Instant::now() < deadline, "the child wrote nothing");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }

    match Checkpoint::open(&path, &binding()) {
        Err(CheckpointError::Locked { holder, .. }) => {
            assert!(
                holder.starts_with(&format!("pid={} ", child.id())),
                "{holder}"
            );
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let (mut ckpt, loaded) = Checkpoint::open(&path, &binding()).unwrap();
    assert!(loaded.rows_recorded() > 1000, "{loaded:?}");
    assert!(loaded.in_doubt().count() <= 1, "{loaded:?}");
    assert_eq!(loaded.journal_len, fs::metadata(&path).unwrap().len());
    ckpt.settled(2).unwrap();
    drop(ckpt);
    let (_, after) = read(&path).unwrap();
    assert_eq!(after.dropped_tail_bytes(), 0);
    assert_eq!(after.is_in_doubt(2), None);
}

/// `cargo test --release --lib checkpoint::tests::throughput -- --ignored --nocapture`
#[test]
#[ignore = "measurement; run in release mode"]
fn throughput() {
    const PAIRS: u64 = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let big = Binding {
        input_len: 10_000_000,
        ..binding()
    };
    let rows: Vec<ReportRow> = (0..1000).map(|i| row(i + 2, Outcome::Unlinked)).collect();
    for sync_every in [None, Some(1000u64)] {
        let path = dir.path().join(format!("bench-{sync_every:?}.ckpt"));
        let (mut ckpt, _) = Checkpoint::open(&path, &big).unwrap();
        let started = Instant::now();
        for line in 2..PAIRS + 2 {
            ckpt.intent(line, 0).unwrap();
            ckpt.flush().unwrap();
            let mut r = rows[(line % 1000) as usize].clone();
            r.line = line;
            ckpt.outcome(&r, line * 300).unwrap();
            if let Some(n) = sync_every
                && line % n == 0
            {
                ckpt.sync().unwrap();
            }
        }
        ckpt.sync().unwrap();
        let took = started.elapsed();
        drop(ckpt);
        let size = fs::metadata(&path).unwrap().len();
        let started = Instant::now();
        let (_, loaded) = read(&path).unwrap();
        let load = started.elapsed();
        assert_eq!(loaded.rows_recorded(), PAIRS);
        eprintln!(
            "sync every {sync_every:?} pairs: {PAIRS} intent+flush+outcome pairs in {took:.2?} \
             = {:.0} records/s ({:.0} pairs/s); journal {} MB loads in {load:.2?} ({:.0} records/s)",
            2.0 * PAIRS as f64 / took.as_secs_f64(),
            PAIRS as f64 / took.as_secs_f64(),
            size / 1_000_000,
            2.0 * PAIRS as f64 / load.as_secs_f64(),
        );
    }
}

#[test]
fn a_huge_row_is_recorded_cut_and_the_job_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.ckpt");
    let report_path = dir.path().join("report.csv");
    let fmt = ReportFormat::Csv;
    let mut huge = row(2, Outcome::Failed);
    huge.key = "u".repeat(2_500_000);
    huge.message = "\u{1}".repeat(1024 * 1024 - 100);
    huge.request = "x".repeat(3_000_000);
    let normal = row(3, Outcome::Unlinked);

    let (mut ckpt, loaded) = Checkpoint::open(&path, &binding()).unwrap();
    let (mut report, _) = ckpt.open_report(&loaded, &report_path, fmt).unwrap();
    record(&mut ckpt, &mut report, &[huge.clone(), normal.clone()]);
    drop((ckpt, report));
    let cut = huge.bounded().into_owned();
    assert_eq!(cut.message.chars().count(), report::MAX_MESSAGE_CHARS);
    let expected = csv_of(&[cut.clone(), normal.clone()]);
    assert_eq!(fs::read(&report_path).unwrap(), expected);

    // Resume: the journal loads, and a rebuild gives the same rows. (Read without the lock:
    // a test elsewhere in this binary forking a child could hold a copy of it for a moment.)
    let (_, loaded) = read(&path).unwrap();
    assert_eq!(loaded.outcome(2), Some(Outcome::Failed));
    assert_eq!(loaded.rows_recorded(), 2);
    assert_eq!(loaded.report_len(), expected.len() as u64);
    fs::remove_file(&report_path).unwrap();
    let mut writer = ReportWriter::create(&report_path, fmt).unwrap();
    rebuild_report(&path, &loaded, &mut writer).unwrap();
    assert_eq!(fs::read(&report_path).unwrap(), expected);
}

#[test]
fn journals_without_the_reference_column_load_with_it_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.ckpt");
    let (ckpt, _) = Checkpoint::open(&path, &binding()).unwrap();
    drop(ckpt);
    // As the version before the `reference` column wrote it (field order matters).
    let new = serde_json::to_string(&row(2, Outcome::Absent)).unwrap();
    let old = new.replace(r#","reference":"""#, "");
    assert_ne!(old, new);
    let mut line = format!(r#"{{"t":"outcome","report_len":10,"row":{old}}}"#).into_bytes();
    assert!(
        fast_outcome(&line).is_some(),
        "the fast path reads old records"
    );
    journal::seal(&mut line);
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend(line);
    fs::write(&path, bytes).unwrap();
    let (_, loaded) = read(&path).unwrap();
    assert_eq!(loaded.outcome(2), Some(Outcome::Absent));
    let mut w = ReportWriter::create(&dir.path().join("r.csv"), ReportFormat::Csv).unwrap();
    rebuild_report(&path, &loaded, &mut w).unwrap();
    let rebuilt = fs::read_to_string(dir.path().join("r.csv")).unwrap();
    assert_eq!(rebuilt.as_bytes(), csv_of(&[row(2, Outcome::Absent)]));

    // New records carry it, and still take the fast path.
    let mut r = row(3, Outcome::Absent);
    r.reference = "T-\"1\"".into();
    let (mut ckpt, _) = Checkpoint::open(&path, &binding()).unwrap();
    ckpt.outcome(&r, 10).unwrap();
    ckpt.flush().unwrap();
    drop(ckpt);
    let text = fs::read_to_string(&path).unwrap();
    let json = text.lines().last().unwrap().rsplit_once('\t').unwrap().0;
    assert!(json.contains(r#""reference":"T-\"1\"""#), "{json}");
    assert_eq!(
        fast_outcome(json.as_bytes()),
        Some((3, Outcome::Absent, 10))
    );
}

#[test]
fn a_report_without_its_checkpoint_is_archived_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.ckpt");
    let report_path = dir.path().join("report.csv");
    fs::write(&report_path, "old rows\n").unwrap();
    let (mut ckpt, loaded) = Checkpoint::open(&path, &binding()).unwrap();
    let (report, start) = ckpt
        .open_report(&loaded, &report_path, ReportFormat::Csv)
        .unwrap();
    assert_eq!(start, ReportStart::Created);
    drop((ckpt, report));
    let archived: Vec<PathBuf> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("report.") && name.ends_with("Z.csv")
        })
        .collect();
    assert_eq!(archived.len(), 1, "{archived:?}");
    assert_eq!(fs::read_to_string(&archived[0]).unwrap(), "old rows\n");
    assert_eq!(
        fs::read_to_string(&report_path).unwrap(),
        format!("{}\n", report::COLUMNS.join(","))
    );

    // With its checkpoint (no row recorded yet), the report is the job's own: no archive.
    let (mut ckpt, loaded) = Checkpoint::open(&path, &binding()).unwrap();
    ckpt.open_report(&loaded, &report_path, ReportFormat::Csv)
        .unwrap();
    drop(ckpt);
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 4);
}

#[test]
fn a_symlinked_checkpoint_or_lock_is_refused() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target");
    fs::write(&target, "keep").unwrap();
    let path = dir.path().join("job.ckpt");
    symlink(&target, &path).unwrap();
    assert!(Checkpoint::open(&path, &binding()).is_err());
    assert!(Checkpoint::open_fresh(&path, &binding(), None).is_err());
    fs::remove_file(&path).unwrap();
    symlink(&target, with_suffix(&path, ".lock")).unwrap();
    assert!(Checkpoint::open(&path, &binding()).is_err());
    assert_eq!(fs::read_to_string(&target).unwrap(), "keep");
}

#[test]
fn a_stop_record_says_why_the_last_run_ended_until_a_later_run_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.ckpt");
    let (mut ckpt, loaded) = Checkpoint::open(&path, &binding()).unwrap();
    assert_eq!(loaded.last_stop(), None);
    assert!(
        !loaded.activity_after_last_stop(),
        "a new journal: no run yet"
    );
    ckpt.intent(3, 0).unwrap();
    ckpt.flush().unwrap();
    let (_, loaded) = read(&path).unwrap();
    assert_eq!(loaded.last_stop(), None);
    assert!(
        loaded.activity_after_last_stop(),
        "a run that left no end record"
    );

    let long = format!("halt: {}", "x\"\n".repeat(2000));
    ckpt.record_stop(&long).unwrap();
    let (_, loaded) = read(&path).unwrap();
    let stop = loaded.last_stop().unwrap();
    assert!(stop.why.starts_with("halt: x\"\n"), "{stop:?}");
    assert_eq!(stop.why.chars().count(), report::MAX_MESSAGE_CHARS);
    assert!(stop.at.ends_with('Z') && stop.at.len() >= 20, "{stop:?}");
    assert!(!loaded.activity_after_last_stop());
    drop(ckpt);

    // A later run records something, then is killed: the old end record is no longer the last.
    let (mut ckpt, loaded) = Checkpoint::open(&path, &binding()).unwrap();
    assert!(!loaded.activity_after_last_stop());
    ckpt.outcome(&row(3, Outcome::Unlinked), 10).unwrap();
    ckpt.flush().unwrap();
    let (_, loaded) = read(&path).unwrap();
    assert!(loaded.activity_after_last_stop());
    assert!(
        loaded.last_stop().is_some(),
        "the one before is still known"
    );
    ckpt.record_stop("complete").unwrap();
    drop(ckpt);
    let (_, loaded) = read(&path).unwrap();
    assert_eq!(loaded.last_stop().unwrap().why, "complete");
    assert_eq!(loaded.counts()[&Outcome::Unlinked], 1);
    // Rebuilding the report from the journal skips end records.
    let report_path = dir.path().join("r.csv");
    let (mut ckpt, loaded) = Checkpoint::open(&path, &binding()).unwrap();
    ckpt.open_report(&loaded, &report_path, ReportFormat::Csv)
        .unwrap();
    let text = fs::read_to_string(&report_path).unwrap();
    assert_eq!(text.matches("auth0|3/github/3").count(), 1, "{text}");
}

#[test]
fn a_wildcard_rows_links_are_journaled_and_loaded_until_its_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.ckpt");
    let (mut ckpt, _) = Checkpoint::open(&path, &binding()).unwrap();
    let params = |id: &'static str| -> Vec<(&'static str, &'static str)> {
        vec![
            ("user_id", "auth0|u"),
            ("provider", "facebook"),
            ("identity_user_id", id),
        ]
    };
    // Line 2: link 1 removed, link 2 failed, link 3 in flight.
    ckpt.link_intent(2, 0, "auth0|u/facebook/1", &params("1"))
        .unwrap();
    ckpt.link_done(2, "facebook/1", Outcome::Unlinked, "")
        .unwrap();
    ckpt.link_intent(2, 0, "auth0|u/facebook/2", &params("2"))
        .unwrap();
    ckpt.link_done(2, "facebook/2", Outcome::Failed, "HTTP 400: \"no\"")
        .unwrap();
    ckpt.link_intent(2, 0, "auth0|u/facebook/3", &params("3"))
        .unwrap();
    // Line 3: the unlink of its link done, the user deletion not started.
    ckpt.link_intent(3, 0, "auth0|v/github/9", &params("9"))
        .unwrap();
    ckpt.link_step_done(3, 0, "auth0|v/github/9", &params("9"))
        .unwrap();
    // Line 4: finished links, then the row's outcome: nothing is kept.
    ckpt.link_intent(4, 0, "auth0|w/github/1", &params("1"))
        .unwrap();
    ckpt.link_done(4, "github/1", Outcome::Unlinked, "")
        .unwrap();
    ckpt.outcome(&row(4, Outcome::Unlinked), 99).unwrap();
    drop(ckpt);

    let (_, loaded) = read(&path).unwrap();
    let two = loaded.links(2).expect("line 2 has link progress");
    assert_eq!(
        two.done,
        vec![
            LinkDone {
                label: "facebook/1".into(),
                outcome: Outcome::Unlinked,
                message: String::new(),
            },
            LinkDone {
                label: "facebook/2".into(),
                outcome: Outcome::Failed,
                message: "HTTP 400: \"no\"".into(),
            },
        ]
    );
    let at = two.current.as_ref().unwrap();
    assert_eq!(at.key, "auth0|u/facebook/3");
    assert_eq!((at.steps_done, at.in_doubt), (0, Some(0)));
    assert_eq!(at.params[2], ("identity_user_id".into(), "3".into()));
    assert_eq!(loaded.is_in_doubt(2), Some(0));
    let three = loaded.links(3).unwrap().current.as_ref().unwrap();
    assert_eq!((three.steps_done, three.in_doubt), (1, None));
    assert!(loaded.links(4).is_none());
    assert_eq!(loaded.outcome(4), Some(Outcome::Unlinked));
    assert!(loaded.links(5).is_none());
}
