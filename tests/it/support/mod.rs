//! Helpers shared by the integration tests: run the real `unlinker`, write jobs, read reports,
//! and (in [`sim`]) start the real `unlinker-sim`.

pub mod emulator;
mod sim;

pub use sim::{Sim, client, client_with_timeout, start_failure};

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub const UNLINKER: &str = env!("CARGO_BIN_EXE_unlinker");

/// The output of one `unlinker` run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Run `unlinker` with `args` and extra environment variables, blocking.
pub fn unlinker(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(UNLINKER);
    cmd.args(args)
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run unlinker").into()
}

/// The same from async tests (the mock server keeps serving meanwhile).
pub async fn unlinker_async(args: Vec<String>, env: Vec<(String, String)>) -> Run {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        unlinker(&args, &env)
    })
    .await
    .unwrap()
}

/// Write `text` to `dir/name` and return the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// One report row as column → value.
pub type Row = BTreeMap<String, String>;

/// Read a CSV report.
pub fn read_report(path: &Path) -> Vec<Row> {
    let mut reader =
        csv::Reader::from_path(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let headers = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            headers
                .iter()
                .zip(r.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// Report rows by line number.
pub fn by_line(rows: &[Row]) -> BTreeMap<u64, Row> {
    rows.iter()
        .map(|r| (r["line"].parse().unwrap(), r.clone()))
        .collect()
}

/// An Auth0 job against `base_url` with a static token.
pub fn auth0_job(dir: &Path, base_url: &str, input: &str, extra: &str) -> PathBuf {
    write(
        dir,
        "job.toml",
        &format!(
            r#"
name = "t"
[input]
path = "{input}"
[output]
report = "report.csv"
[vendors.auth0]
type = "auth0"
base_url = "{base_url}"
token = "${{TEST_TOKEN}}"
rate = 1000
burst = 1000
concurrency = 8
[retry]
base_delay = "10ms"
max_delay = "100ms"
timeout = "5s"
{extra}
"#
        ),
    )
}

pub const TOKEN: &str = "tok-3f9a7c2e5d1b";

/// `run JOB --no-progress` plus `extra`, as owned strings for [`unlinker_async`].
pub fn run_args(job: &Path, extra: &[&str]) -> Vec<String> {
    let mut v = vec![
        "run".to_string(),
        job.display().to_string(),
        "--no-progress".into(),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// The environment of [`auth0_job`].
pub fn token_env() -> Vec<(String, String)> {
    vec![("TEST_TOKEN".into(), TOKEN.into())]
}

/// An Auth0 CSV input of `n` distinct rows: `auth0|u{i},github,{i}`.
pub fn rows_input(n: usize) -> String {
    let mut s = String::from("user_id,provider,identity_user_id\n");
    for i in 0..n {
        s.push_str(&format!("auth0|u{i},github,{i}\n"));
    }
    s
}

/// Start `unlinker run JOB` in the background (for tests that kill or signal it).
pub fn spawn_run(job: &Path, stderr: Stdio) -> Child {
    Command::new(UNLINKER)
        .args(["run", job.to_str().unwrap(), "--no-progress"])
        .env("TEST_TOKEN", TOKEN)
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start unlinker")
}

/// Requests a wiremock server has received with `method`.
pub async fn requests_with(server: &wiremock::MockServer, method: &str) -> Vec<wiremock::Request> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.method.as_str() == method)
        .collect()
}

/// Wait (up to 10 s) until the server has received at least `n` requests.
pub async fn wait_for_requests(server: &wiremock::MockServer, n: usize) {
    let start = std::time::Instant::now();
    while server.received_requests().await.unwrap_or_default().len() < n
        && start.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Decode `k=v&...` (a form body or a raw query), `+` and `%XX` decoded.
pub fn decode_pairs(text: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .collect()
}

/// The decoded pairs of `text`, sorted, for comparing a whole form at once.
pub fn sorted_pairs(text: &str) -> Vec<(String, String)> {
    let mut pairs = decode_pairs(text);
    pairs.sort();
    pairs
}

/// Owned, sorted `(name, value)` pairs from literals.
pub fn pairs_of(list: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = list
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    pairs.sort();
    pairs
}

/// Read and parse a JSON file (a `--summary` file).
pub fn read_json(path: &Path) -> serde_json::Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad JSON in {}: {e}", path.display()))
}

/// A report's `finished_at` (RFC 3339, UTC) as a time.
pub fn parse_time(text: &str) -> std::time::SystemTime {
    humantime::parse_rfc3339(text).unwrap_or_else(|e| panic!("bad RFC 3339 time {text:?}: {e}"))
}

/// A command that runs past this fails its test instead of hanging it.
pub const RUN_DEADLINE: Duration = Duration::from_secs(60);

/// Run `cmd` to its end (at most [`RUN_DEADLINE`], else kill it and panic), feeding `stdin` through
/// a pipe (or none), capturing stdout and stderr.
pub fn run_with_deadline(cmd: &mut Command, stdin: Option<&[u8]>) -> Run {
    cmd.env_remove("RUST_BACKTRACE")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    if let Some(data) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let data = data.to_vec();
        // A reader that stops early must not block the test: a broken pipe is fine.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        });
    }
    let collect = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = r.read_to_end(&mut s);
            String::from_utf8_lossy(&s).into_owned()
        })
    };
    let out = collect(Box::new(child.stdout.take().unwrap()));
    let err = collect(Box::new(child.stderr.take().unwrap()));
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > RUN_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} still running after {RUN_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Make a named pipe at `path`.
pub fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// A file's permission bits.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Names of `*.part` files in `dir` (half-made spool copies).
pub fn part_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".part"))
        .collect()
}

/// Wait for `child` (stderr piped) to end, sampling its peak RSS (`VmHWM`, kB) meanwhile; the
/// peak is the last sample taken before it exited.
pub fn wait_sampling_peak_rss(mut child: Child) -> (Run, u64) {
    let mut stderr = child.stderr.take().expect("stderr piped");
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status_path = format!("/proc/{}/status", child.id());
    let start = std::time::Instant::now();
    let mut peak = 0u64;
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(&status_path)
            && let Some(kb) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kb);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > RUN_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running after {RUN_DEADLINE:?} (peak RSS so far {peak} kB)");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let run = Run {
        code: status.code().unwrap_or(-1),
        stdout: String::new(),
        stderr: err.join().unwrap(),
    };
    (run, peak)
}

/// `secret` in every encoding the product applies (SPEC section 8): raw, percent-encoded (RFC
/// 3986, as the adapters do), form-encoded (`+` for space), JSON-escaped, and base64 (standard
/// and URL-safe, with and without padding).
pub fn secret_forms(secret: &str) -> Vec<String> {
    const UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let json = serde_json::to_string(secret).unwrap();
    let mut forms = vec![
        secret.to_string(),
        percent_encoding::utf8_percent_encode(secret, UNRESERVED).to_string(),
        url::form_urlencoded::byte_serialize(secret.as_bytes()).collect(),
        json[1..json.len() - 1].to_string(),
    ];
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        forms.push(engine.encode(secret.as_bytes()));
    }
    forms.sort();
    forms.dedup();
    forms
}
