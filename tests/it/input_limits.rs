//! Inputs that can be read only once (stdin, `/dev/stdin`, process substitution, a FIFO) and
//! records too long to hold, through the real binary against the simulator on loopback.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// How the input reaches `--input`.
#[derive(Debug, Clone, Copy)]
enum Form {
    /// `--input -`, data on a piped stdin.
    Dash,
    /// `--input /dev/stdin`, data on a piped stdin.
    DevStdin,
    /// `bash -c '... --input <(cat FILE)'`: a `/dev/fd/N` pipe.
    ProcessSubstitution,
    /// `--input FIFO`, written by another thread.
    Fifo,
}

const FORMS: [Form; 4] = [
    Form::Dash,
    Form::DevStdin,
    Form::ProcessSubstitution,
    Form::Fifo,
];

/// A one-vendor Auth0 job against the simulator, reading `-` (so `--input` names the input) in
/// `format` (a pipe has no extension to infer it from).
fn sim_job(dir: &Path, url: &str, format: &str) -> std::path::PathBuf {
    write(
        dir,
        "job.toml",
        &format!(
            r#"
name = "pipes"
[input]
path = "-"
format = "{format}"
[output]
report = "report.csv"
[vendors.auth0]
type = "auth0"
base_url = "{url}"
token = "sim-token"
rate = 1000
burst = 1000
concurrency = 4
[retry]
base_delay = "10ms"
max_delay = "100ms"
timeout = "5s"
"#
        ),
    )
}

/// Run `unlinker run JOB --no-progress EXTRA...` with `data` fed as `form`.
fn run_fed(form: Form, dir: &Path, job: &Path, data: &[u8], extra: &[&str]) -> Run {
    let job = job.to_str().unwrap();
    let mut args = vec!["run", job, "--no-progress"];
    args.extend_from_slice(extra);
    match form {
        Form::Dash | Form::DevStdin => {
            let input = if matches!(form, Form::Dash) {
                "-"
            } else {
                "/dev/stdin"
            };
            args.extend(["--input", input]);
            run_with_deadline(Command::new(UNLINKER).args(&args), Some(data))
        }
        Form::ProcessSubstitution => {
            let file = dir.join("feed.csv");
            std::fs::write(&file, data).unwrap();
            let script = r#"exec "$0" "$@" --input <(cat "$FEED")"#;
            let mut cmd = Command::new("bash");
            cmd.arg("-c")
                .arg(script)
                .arg(UNLINKER)
                .args(&args)
                .env("FEED", &file);
            run_with_deadline(&mut cmd, None)
        }
        Form::Fifo => {
            let fifo = dir.join("in.fifo");
            if !fifo.exists() {
                mkfifo(&fifo);
            }
            let writer = {
                let (fifo, data) = (fifo.clone(), data.to_vec());
                // Blocks in `open` until the run opens the FIFO for reading.
                std::thread::spawn(move || {
                    use std::io::Write;
                    let mut f = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
                    let _ = f.write_all(&data);
                })
            };
            args.extend(["--input", fifo.to_str().unwrap()]);
            let run = run_with_deadline(Command::new(UNLINKER).args(&args), None);
            assert!(
                writer.is_finished(),
                "the run never read the FIFO to its end"
            );
            run
        }
    }
}

#[test]
fn every_pipe_form_resumes_with_the_same_data_and_refuses_other_data() {
    for form in FORMS {
        let dir = tempfile::tempdir().unwrap();
        let sim = Sim::start(&["--all-linked"]);
        let job = sim_job(dir.path(), &sim.url, "csv");
        let data = rows_input(20);

        let first = run_fed(form, dir.path(), &job, data.as_bytes(), &["--limit", "5"]);
        assert_eq!(
            first.code, 4,
            "{form:?}: --limit stops (exit 4)\n{}",
            first.stderr
        );
        assert_eq!(
            read_report(&dir.path().join("report.csv")).len(),
            5,
            "{form:?}"
        );

        // Other data on resume: refused, and the kept copy and binding are untouched.
        let other = rows_input(21);
        let refused = run_fed(form, dir.path(), &job, other.as_bytes(), &[]);
        assert_eq!(
            refused.code, 1,
            "{form:?}: other data is refused\n{}",
            refused.stderr
        );
        assert!(
            refused.stderr.contains("input file changed"),
            "{form:?}: {}",
            refused.stderr
        );

        let resumed = run_fed(form, dir.path(), &job, data.as_bytes(), &[]);
        assert_eq!(
            resumed.code, 0,
            "{form:?}: resume completes\n{}",
            resumed.stderr
        );
        assert!(
            resumed.stderr.contains("complete"),
            "{form:?}: {}",
            resumed.stderr
        );

        let rows = read_report(&dir.path().join("report.csv"));
        let lines: Vec<u64> = rows.iter().map(|r| r["line"].parse().unwrap()).collect();
        let mut sorted = lines.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            (2..=21).collect::<Vec<u64>>(),
            "{form:?}: every line once"
        );
        assert!(rows.iter().all(|r| r["outcome"] == "unlinked"), "{form:?}");
        for i in 0..20 {
            let key = format!("auth0|u{i}/github/{i}");
            assert_eq!(
                sim.key_count("auth0", &key, "unlink_calls"),
                1,
                "{form:?}: {key} sent once"
            );
        }
        assert_eq!(sim.vendor_count("auth0", "unlink_calls"), 20, "{form:?}");

        // The kept copy is the data, owner-only; no part file is left behind.
        let kept = dir.path().join("report.csv.ckpt.input");
        assert_eq!(std::fs::read(&kept).unwrap(), data.as_bytes(), "{form:?}");
        assert_eq!(mode(&kept), 0o600, "{form:?}");
        assert_eq!(part_files(dir.path()), Vec::<String>::new(), "{form:?}");

        // `status` reads the kept copy, never the pipe.
        let status = unlinker(&["status", job.to_str().unwrap()], &[]);
        assert_eq!(status.code, 0, "{}", status.stderr);
        assert!(
            status.stdout.contains("state      complete"),
            "{}",
            status.stdout
        );

        // A dry run reads its own copy, counts the rows from it, and removes it at the end.
        let summary = dir.path().join("summary.json");
        let dry = ["--dry-run", "--summary", summary.to_str().unwrap()];
        let run = run_fed(form, dir.path(), &job, data.as_bytes(), &dry);
        assert_eq!(run.code, 0, "{form:?}: {}", run.stderr);
        let rows = read_report(&dir.path().join("report.dry-run.csv"));
        assert_eq!(rows.len(), 20, "{form:?}");
        assert!(rows.iter().all(|r| r["outcome"] == "dry_run"), "{form:?}");
        assert_eq!(read_json(&summary)["total_rows"], 20, "{form:?}");
        assert_eq!(part_files(dir.path()), Vec::<String>::new(), "{form:?}");
        assert_eq!(sim.vendor_count("auth0", "requests"), 20, "{form:?}");
    }

    // `validate` streams a pipe once, without any copy.
    let dir = tempfile::tempdir().unwrap();
    let job = sim_job(dir.path(), "http://127.0.0.1:9", "csv");
    let out = run_with_deadline(
        Command::new(UNLINKER).args(["validate", job.to_str().unwrap(), "--input", "-"]),
        Some(rows_input(30).as_bytes()),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("30 rows: 30 valid"), "{}", out.stdout);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "only the job file"
    );
}

#[test]
fn sigterm_stops_a_run_waiting_on_a_fifo_without_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let job = sim_job(dir.path(), "http://127.0.0.1:9", "csv");
    let fifo = dir.path().join("in.fifo");
    mkfifo(&fifo);
    let mut child = Command::new(UNLINKER)
        .args(["run", job.to_str().unwrap(), "--no-progress"])
        .args(["--input", fifo.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it is copying (blocked opening the FIFO), then signal.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    while !log.iter().any(|l: &String| l.contains("copying the input")) {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(line) => log.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("the run never started copying the FIFO: {log:?}");
            }
        }
    }
    // The signal handlers register in a task of their own (cli.rs), which runs once the run task
    // waits on the copy: right after this line, but not before it. A signal before then would
    // kill the process the default way.
    std::thread::sleep(Duration::from_millis(300));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let signalled = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if signalled.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running 5 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    log.extend(rx.try_iter());
    assert_eq!(code, Some(4), "a signal stops the run as asked: {log:?}");
    assert!(
        log.iter()
            .any(|l| l.contains("stopped while copying input")),
        "{log:?}"
    );
    // Nothing was recorded, nothing half-copied is left.
    assert!(!dir.path().join("report.csv.ckpt").exists());
    assert!(!dir.path().join("report.csv.ckpt.input").exists());
    assert_eq!(part_files(dir.path()), Vec::<String>::new());
}

/// Bytes of the 2 MB and 100 MB records.
const BIG: usize = 2 << 20;
const HUGE: usize = 100 << 20;
/// Rows after the huge record: the run keeps going well past the peak, so sampling sees it.
const AFTER: usize = 20_000;

#[test]
fn huge_csv_fields_are_invalid_rows_and_memory_stays_flat() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.csv");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        writeln!(f, "user_id,provider,identity_user_id,note").unwrap(); // 1
        writeln!(f, "auth0|a,github,1,").unwrap(); // 2
        // 3-4: a 2 MB quoted field with a newline inside.
        writeln!(f, "auth0|b,github,2,\"{}", "x".repeat(BIG)).unwrap();
        writeln!(f, "\"").unwrap();
        writeln!(f, "auth0|c,github,3,ok").unwrap(); // 5
        writeln!(f, "auth0|d,github,4,{}", "n".repeat(1500)).unwrap(); // 6: a long field
        // 7-9: a 100 MB quoted field with two newlines inside.
        let chunk = "y".repeat(1 << 20);
        writeln!(f, "auth0|e,github,5,\"").unwrap();
        for _ in 0..HUGE >> 20 {
            f.write_all(chunk.as_bytes()).unwrap();
        }
        writeln!(f, "\n\"").unwrap();
        for i in 0..AFTER {
            writeln!(f, "auth0|z{i},github,{i},").unwrap(); // 10..
        }
    }
    let rows = dry_run_rows_under_100_mb(dir.path(), "in.csv");
    assert_eq!(rows.len(), 5 + AFTER);
    let rows = by_line(&rows);
    let too_long = "record longer than 65536 bytes";
    assert_eq!(rows[&2]["outcome"], "dry_run");
    assert_eq!(rows[&3]["outcome"], "invalid");
    assert_eq!(rows[&3]["message"], too_long);
    assert_eq!(rows[&5]["outcome"], "dry_run");
    assert_eq!(rows[&6]["outcome"], "invalid");
    assert_eq!(rows[&6]["message"], "field `note`: longer than 1024 bytes");
    assert_eq!(rows[&7]["outcome"], "invalid");
    assert_eq!(rows[&7]["message"], too_long);
    assert_eq!(rows[&10]["outcome"], "dry_run");
    assert_eq!(rows[&10]["key"], "auth0|z0/github/0");
    let last = 9 + AFTER as u64;
    assert_eq!(rows[&last]["outcome"], "dry_run");
}

#[test]
fn huge_jsonl_lines_are_invalid_rows_and_memory_stays_flat() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.jsonl");
    let row = |u: &str, i: usize| {
        format!("{{\"user_id\":\"auth0|{u}\",\"provider\":\"github\",\"identity_user_id\":{i}}}")
    };
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        writeln!(f, "{}", row("a", 1)).unwrap(); // 1
        writeln!(f, "{{\"user_id\":\"{}\"}}", "x".repeat(BIG)).unwrap(); // 2
        writeln!(f, "{}", row("c", 3)).unwrap(); // 3
        // 4: one 100 MB line.
        let chunk = "y".repeat(1 << 20);
        write!(f, "{{\"user_id\":\"auth0|e\",\"pad\":\"").unwrap();
        for _ in 0..HUGE >> 20 {
            f.write_all(chunk.as_bytes()).unwrap();
        }
        writeln!(f, "\"}}").unwrap();
        for i in 0..AFTER {
            writeln!(f, "{}", row(&format!("z{i}"), i)).unwrap(); // 5..
        }
    }
    let rows = dry_run_rows_under_100_mb(dir.path(), "in.jsonl");
    assert_eq!(rows.len(), 4 + AFTER);
    let rows = by_line(&rows);
    let too_long = "record longer than 65536 bytes";
    assert_eq!(rows[&1]["outcome"], "dry_run");
    assert_eq!(rows[&2]["outcome"], "invalid");
    assert_eq!(rows[&2]["message"], too_long);
    assert_eq!(rows[&3]["outcome"], "dry_run");
    assert_eq!(rows[&4]["outcome"], "invalid");
    assert_eq!(rows[&4]["message"], too_long);
    assert_eq!(rows[&5]["key"], "auth0|z0/github/0");
    let last = 4 + AFTER as u64;
    assert_eq!(rows[&last]["outcome"], "dry_run");
}

/// `run --dry-run` on `dir/input`, asserting a peak RSS under 100 MB; the dry-run report's rows.
fn dry_run_rows_under_100_mb(dir: &Path, input: &str) -> Vec<Row> {
    let format = input.rsplit('.').next().unwrap();
    let job = sim_job(dir, "http://127.0.0.1:9", format);
    let input = dir.join(input);
    let child = Command::new(UNLINKER)
        .args(["run", job.to_str().unwrap(), "--dry-run", "--no-progress"])
        .args(["--input", input.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (run, peak_kb) = wait_sampling_peak_rss(child);
    assert_eq!(run.code, 3, "invalid rows: exit 3\n{}", run.stderr);
    eprintln!("peak RSS {peak_kb} kB");
    assert!(peak_kb > 0, "no RSS sample was taken");
    assert!(
        peak_kb < 100 * 1024,
        "peak RSS {} MB, over 100 MB",
        peak_kb / 1024
    );
    read_report(&dir.join("report.dry-run.csv"))
}
